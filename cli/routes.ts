// --setup-routes: adds the policy-routing entries replies need (lib/self-check's routingCommands)
// at start and removes exactly the ones it added at exit, leaving entries that were there before.
import {
  type IpRunner,
  hasLocalDefaultRoute,
  isOurRule,
  parseRules,
  routingCommands,
  runIp,
  type RouteCommand,
} from '../lib/self-check.js';

export interface RouteSetup {
  /** The entries this process added, in the order it added them. */
  added: RouteCommand[];
  /** The entries that were present already and are left alone. */
  present: RouteCommand[];
  /** Deletes what was added, newest first; resolves to the commands that failed to delete. */
  teardown(): Promise<string[]>;
}

export interface RouteTarget {
  family: 4 | 6;
  address: string;
}

/** Adds what is missing for each target; on a failure removes what it added and throws. */
export async function setupRoutes(
  targets: readonly RouteTarget[],
  table: number,
  ip: IpRunner = runIp,
): Promise<RouteSetup> {
  const added: RouteCommand[] = [];
  const present: RouteCommand[] = [];
  const teardown = async (): Promise<string[]> => {
    const failed: string[] = [];
    for (const cmd of [...added].reverse()) {
      const r = await ip(cmd.del);
      if (r.code !== 0) failed.push(`ip ${cmd.del.join(' ')}: ${r.stderr.trim()}`);
    }
    added.length = 0;
    return failed;
  };
  try {
    for (const { family, address } of targets) {
      const fam = family === 6 ? ['-6'] : [];
      const [rule, route] = routingCommands(family, table, address) as [RouteCommand, RouteCommand];
      // `ip rule add` happily adds a duplicate, so look first; a route would say "File exists".
      const rules = await ip([...fam, 'rule', 'show']);
      if (rules.code !== 0)
        throw new Error(`ip ${[...fam, 'rule', 'show'].join(' ')}: ${rules.stderr.trim()}`);
      const from = rule.add[fam.length + 3]!;
      const ruleThere = parseRules(rules.stdout).some((r) => isOurRule(r, from, table));
      const routes = await ip([...fam, 'route', 'show', 'table', String(table)]);
      const routeThere = routes.code === 0 && hasLocalDefaultRoute(routes.stdout);
      for (const [cmd, there] of [
        [rule, ruleThere],
        [route, routeThere],
      ] as const) {
        if (
          there ||
          present.some((p) => p.text === cmd.text) ||
          added.some((a) => a.text === cmd.text)
        ) {
          if (there && !present.some((p) => p.text === cmd.text)) present.push(cmd);
          continue;
        }
        const r = await ip(cmd.add);
        if (r.code !== 0)
          throw new Error(`${cmd.text}: ${r.stderr.trim() || `exit status ${r.code}`}`);
        added.push(cmd);
      }
    }
  } catch (err) {
    await teardown();
    throw err;
  }
  return { added, present, teardown };
}
