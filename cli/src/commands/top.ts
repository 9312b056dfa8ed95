import { Flags } from '@oclif/core';
import { parseDuration } from '@wmproxy/health';
import type { SeriesTransition, SeriesView, StatusView, UpstreamView } from '@wmproxy/control';
import { ControlCommand, controlFlags } from './_control.js';

const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';

export default class Top extends ControlCommand {
  static override summary = 'Live view of a running wmproxy in the terminal: traffic, latency and every upstream server.';
  static override description =
    'Reads GET /series, /status and /upstreams of the control API and redraws in place: totals at the top (requests/s by status class, p50/p95/p99, bytes out, connections), then per upstream server its request and error rate, state, requests in flight, probe latency and reason, then the last health changes. q or Ctrl-C quits. --once prints one frame and exits (for scripts). Exit status: 0, 1 when the API cannot be reached, 2 for bad arguments.';
  static override examples = ['<%= config.bin %> top', '<%= config.bin %> top --control 10.0.0.5:8837 --token "$TOKEN" --interval 2s', '<%= config.bin %> top --once'];
  static override flags = {
    control: controlFlags.control,
    token: controlFlags.token,
    once: Flags.boolean({ description: 'print one frame and exit', default: false }),
    interval: Flags.string({ description: 'time between refreshes', default: '1s' }),
    window: Flags.string({ description: 'rates and percentiles over this much of the recent past', default: '10s' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(Top);
    let intervalMs: number;
    let windowSeconds: number;
    try {
      intervalMs = parseDuration(flags.interval);
      windowSeconds = Math.max(1, Math.round(parseDuration(flags.window) / 1000));
    } catch (error) {
      return this.usageError(`--interval/--window: ${(error as Error).message}`);
    }
    if (intervalMs < 100) return this.usageError('--interval: at least 100ms');
    const { renderTop } = await import('@wmproxy/control');
    const client = await this.client(flags);
    const transitions: SeriesTransition[] = [];
    let since = 0;
    const frame = async (colour: boolean, width: number | undefined): Promise<string> => {
      const [status, upstreams, series] = await Promise.all([
        client.request<StatusView>('GET', '/status').then((answer) => answer.body),
        client.request<{ upstreams: UpstreamView[] }>('GET', '/upstreams').then((answer) => answer.body.upstreams),
        client.request<SeriesView>('GET', `/series?since=${since}`).then((answer) => answer.body),
      ]);
      // Only the window is asked for after the first frame; health changes are kept here.
      since = series.at - (windowSeconds + 2) * 1000;
      for (const change of series.transitions) {
        if (!transitions.some((known) => known.at === change.at && known.target === change.target && known.kind === change.kind)) transitions.push(change);
      }
      transitions.splice(0, Math.max(0, transitions.length - 5));
      return renderTop({ status, upstreams, series: { ...series, transitions }, windowSeconds, colour, ...(width ? { width } : {}) });
    };
    if (flags.once) {
      try {
        this.log(await frame(false, undefined));
      } catch (error) {
        return this.fail(error);
      }
      return;
    }
    await this.live(frame, intervalMs);
  }

  /** Redraw in place until q, Ctrl-C or SIGTERM; an unreachable API shows as a line at the top and is retried. */
  private async live(frame: (colour: boolean, width: number | undefined) => Promise<string>, intervalMs: number): Promise<void> {
    const out = process.stdout;
    const input = process.stdin;
    const tty = out.isTTY === true;
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    const onKey = (chunk: Buffer) => {
      const key = chunk.toString();
      if (key === 'q' || key === 'Q' || key === '\x03') stop();
    };
    if (input.isTTY) {
      input.setRawMode(true);
      input.resume();
      input.on('data', onKey);
    }
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (tty) out.write(ENTER);
    let last = '';
    try {
      for (;;) {
        let text: string;
        try {
          text = await frame(tty, tty ? out.columns : undefined);
          last = text;
        } catch (error) {
          text = `wmproxy top: ${(error as Error).message} (retrying)\n${last}`;
        }
        // Home, each line cleared to its end, the rest of the screen cleared.
        out.write(tty ? `\x1b[H${text.split('\n').join('\x1b[K\n')}\x1b[K\n\x1b[J` : `${text}\n\n`);
        const timer = new Promise<'tick'>((resolve) => setTimeout(resolve, intervalMs, 'tick'));
        if ((await Promise.race([timer, stopped.then(() => 'stop' as const)])) === 'stop') break;
      }
    } finally {
      if (tty) out.write(LEAVE);
      if (input.isTTY) {
        input.off('data', onKey);
        input.setRawMode(false);
        input.pause();
      }
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  }
}
