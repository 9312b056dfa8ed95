/**
 * @wmproxy/control: a running wmproxy instance built from one configuration
 * (start every service, hot reload without dropping traffic, graceful stop),
 * its control API and dashboard (Elysia), metrics and reopenable logs.
 */
export { CONTROL_DEFAULTS } from '@wmproxy/config';
export { Instance, VERSION, type InstanceOptions } from './instance.js';
export type { InstanceEvent, ReloadResult, StatusView, ServiceStatus, UpstreamView, UpstreamServerView, WorkerView, ControlTarget, ClusterView, ClusterSource } from './types.js';
export { ControlServer } from './api.js';
export { ControlClient, ControlClientError, type ControlClientOptions } from './client.js';
export { DASHBOARD_HTML } from './dashboard.js';
export { Metrics, Histogram, Exposition } from './metrics.js';
export { LogSet, ReopenableSink, MeteredAccessLog } from './logging.js';
export { ForwardService, forwardOptions, listenKey, serviceKey } from './services/forward.js';
export { ReverseService, reverseOptions, healthTargets } from './services/reverse.js';
export { staticOptions } from './services/static-location.js';
export { TimeSeries, histogramQuantile, SERIES_DEFAULTS, type SeriesView, type SeriesTransition } from './timeseries.js';
export { renderTop, type TopInput } from './top.js';
