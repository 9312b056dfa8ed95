export * from './frame.js';
export * from './mux.js';
export * from './auth.js';
export * from './mapping.js';
export * from './server.js';
export * from './client.js';
