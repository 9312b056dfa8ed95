export * from './frame.js';
export * from './mux.js';
