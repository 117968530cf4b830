// placeholder
import type { CliIo } from './main.js';
export async function runDemo(io: CliIo): Promise<number> {
  io.stderr.write('not yet\n');
  return 1;
}
