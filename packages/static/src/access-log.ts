import { createWriteStream, type WriteStream } from 'node:fs';

export type AccessLogFormat = 'combined' | 'json';

export interface AccessLogEntry {
  remoteAddress: string;
  method: string;
  target: string;
  protocol: string;
  status: number;
  bytes: number;
  referer: string | undefined;
  userAgent: string | undefined;
  durationMs: number;
}

/** Lines waiting for the file beyond this are dropped (and counted): memory stays bounded. */
const MAX_PENDING_BYTES = 1024 * 1024;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function pad(value: number): string {
  return value < 10 ? '0' + value : String(value);
}

/** nginx's `$time_local` in UTC: `10/Oct/2000:13:55:36 +0000`. */
function nginxTime(date: Date): string {
  return `${pad(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}

/** nginx escapes `"`, `\` and non-printable bytes in log variables as `\xHH`. */
function escapeField(value: string): string {
  return value.replace(/[\x00-\x1f"\\\x7f-\uffff]/g, (char) => {
    const code = char.charCodeAt(0);
    return code > 0xff ? char : '\\x' + code.toString(16).toUpperCase().padStart(2, '0');
  });
}

export function formatAccessLine(entry: AccessLogEntry, format: AccessLogFormat, now = new Date()): string {
  if (format === 'json') {
    return (
      JSON.stringify({
        time: now.toISOString(),
        remote: entry.remoteAddress,
        method: entry.method,
        uri: entry.target,
        protocol: entry.protocol,
        status: entry.status,
        bytes: entry.bytes,
        referer: entry.referer ?? '',
        userAgent: entry.userAgent ?? '',
        durationMs: Math.round(entry.durationMs * 1000) / 1000,
      }) + '\n'
    );
  }
  const request = escapeField(`${entry.method} ${entry.target} ${entry.protocol}`);
  return `${entry.remoteAddress || '-'} - - [${nginxTime(now)}] "${request}" ${entry.status} ${entry.bytes} "${escapeField(entry.referer ?? '-')}" "${escapeField(entry.userAgent ?? '-')}"\n`;
}

/** An access log written to a file (appending) or standard output (`-`). */
export class AccessLog {
  private readonly stream: WriteStream | NodeJS.WriteStream;
  private readonly owned: boolean;
  /** Lines dropped because the destination could not keep up. */
  dropped = 0;

  constructor(readonly destination: string, readonly format: AccessLogFormat = 'combined') {
    if (destination === '-') {
      this.stream = process.stdout;
      this.owned = false;
    } else {
      this.stream = createWriteStream(destination, { flags: 'a' });
      this.stream.on('error', () => undefined);
      this.owned = true;
    }
  }

  write(entry: AccessLogEntry): void {
    if (this.stream.writableLength > MAX_PENDING_BYTES) {
      this.dropped++;
      return;
    }
    this.stream.write(formatAccessLine(entry, this.format));
  }

  close(): Promise<void> {
    if (!this.owned) return Promise.resolve();
    return new Promise((resolve) => (this.stream as WriteStream).end(resolve));
  }
}
