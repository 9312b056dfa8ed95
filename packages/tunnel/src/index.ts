export * from './frame.js';
export * from './mux.js';
export * from './auth.js';
