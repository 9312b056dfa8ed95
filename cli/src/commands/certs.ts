import { ControlCommand, controlFlags } from './_control.js';
import type { ManagedCertificate } from '@wmproxy/acme';

export default class Certs extends ControlCommand {
  static override summary = 'List the certificates a running wmproxy manages through ACME (tls = "auto").';
  static override description =
    'Calls GET /certs of the control API: names, status, issuer, expiry, next renewal and the last error of each managed certificate. Exit status: 0, 1 when the API cannot be reached, 2 for bad arguments.';
  static override examples = ['<%= config.bin %> certs', '<%= config.bin %> certs --control 127.0.0.1:8837 --json'];
  static override flags = controlFlags;

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(Certs);
    const client = await this.client(flags);
    let certificates: ManagedCertificate[];
    try {
      certificates = (await client.request<{ certificates: ManagedCertificate[] }>('GET', '/certs')).body.certificates;
    } catch (error) {
      return this.fail(error);
    }
    if (flags.json) {
      this.log(JSON.stringify({ certificates }, null, 2));
      return;
    }
    if (certificates.length === 0) {
      this.log('no managed certificates (no server or tunnel has automatic HTTPS)');
      return;
    }
    for (const row of certificates) {
      this.log(`${row.names.join(', ')}`);
      this.log(`  status ${row.status}${row.failures > 0 ? ` (${row.failures} failed orders in a row)` : ''}`);
      this.log(`  issuer ${row.issuer ?? '-'}`);
      this.log(`  valid ${row.notBefore ?? '-'} to ${row.notAfter ?? '-'}`);
      this.log(`  next renewal ${row.nextRenewal ?? '-'}`);
      if (row.lastError) this.log(`  last error ${row.lastError}`);
    }
  }
}
