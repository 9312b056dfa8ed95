export { HpackDecoder, DynamicTable, ENTRY_OVERHEAD, latin1, type Http2Headers, type HpackDecoderOptions, type DecodeResult } from './decoder.js';
export { HpackEncoder, type HpackEncoderOptions } from './encoder.js';
export { huffmanDecode, huffmanEncode, huffmanLength } from './huffman.js';
export { STATIC_TABLE } from './static-table.js';
