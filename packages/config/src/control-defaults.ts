/**
 * Defaults of the `[control]` section and of the process (workers). They
 * belong to @wmproxy/control, which re-exports them as CONTROL_DEFAULTS; they
 * are defined here, in a file that imports nothing, because control is built
 * on config (config cannot import control). The control README's table is
 * tested against them.
 */
export const CONTROL_DEFAULTS = Object.freeze({
  enabled: true,
  /** The control API and dashboard (the original wmproxy's control port). */
  listen: '127.0.0.1:8837' as string,
  /** Host names besides the listen address, localhost and loopback IPs that requests may name. */
  allowedHosts: Object.freeze([] as string[]),
  /** Processes sharing the listeners. */
  workers: 1,
});
