// `mmproxy check`: runs lib/self-check for the flags given and prints one line per item, OK, FAIL
// (followed by the commands that fix it) or SKIP. Exit status 0 when nothing failed, 1 otherwise.
import { selfCheck, type CheckItem } from '../lib/self-check.js';
import { DEFAULT_ROUTE_TABLE, type CliFlags } from './flags.js';
import type { CliIo } from './io.js';

/** The text `mmproxy check` prints for one item. */
export function formatCheckItem(item: CheckItem): string {
  const tag = item.status === 'ok' ? 'OK  ' : item.status === 'fail' ? 'FAIL' : 'SKIP';
  return [`${tag}  ${item.title}: ${item.detail}`, ...item.fix.map((f) => `      fix: ${f}`)].join(
    '\n',
  );
}

export async function runCheck(flags: CliFlags, io: CliIo): Promise<number> {
  const items = await selfCheck({
    target4: flags.target4,
    target6: flags.target6,
    protocol: flags.protocol,
    mark: flags.mark,
    table: flags.setupRoutes ?? DEFAULT_ROUTE_TABLE,
  });
  for (const item of items) io.stdout.write(formatCheckItem(item) + '\n');
  const failed = items.filter((i) => i.status === 'fail').length;
  io.stdout.write(
    failed === 0
      ? `All ${items.length} checks passed${items.some((i) => i.status === 'skip') ? ' (some skipped)' : ''}.\n`
      : `${failed} of ${items.length} checks failed.\n`,
  );
  return failed === 0 ? 0 : 1;
}
