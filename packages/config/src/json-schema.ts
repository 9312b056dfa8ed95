import { ConfigSchema } from './schema.js';

/** The JSON Schema of the configuration file (what `wmproxy schema` prints and `wmproxy.schema.json` holds). */
export function jsonSchema(): Record<string, unknown> {
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...(JSON.parse(JSON.stringify(ConfigSchema)) as Record<string, unknown>) };
}

export function jsonSchemaText(): string {
  return JSON.stringify(jsonSchema(), null, 2) + '\n';
}
