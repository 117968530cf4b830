// The import graph of lib/ and cli/ has no cycle: each module can be read, and tested, after the
// modules it imports. Static and dynamic imports of relative paths are both followed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest parent with lib/ and cli/ sources (dist/test/ runs this). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'cli', 'main.ts'))) {
    const up = path.dirname(dir);
    assert.notEqual(up, dir, 'cli/main.ts not found above the test file');
    dir = up;
  }
  return dir;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;

/** Relative imports of `file`, resolved to the .ts files they name (type-only ones included). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, '');
  return [...text.matchAll(IMPORT)].map((m) =>
    path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')),
  );
}

test('lib/ and cli/ import each other without a cycle', () => {
  const root = repoRoot();
  const files = [...sources(path.join(root, 'lib')), ...sources(path.join(root, 'cli'))];
  assert.ok(files.length > 10, `only ${files.length} modules found`);
  const graph = new Map(files.map((f) => [f, importsOf(f)]));
  for (const [file, deps] of graph) {
    for (const d of deps)
      assert.ok(existsSync(d), `${path.relative(root, file)} imports ${d}, which is missing`);
  }
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): void => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'visiting') {
      const cycle = [...stack.slice(stack.indexOf(file)), file].map((f) => path.relative(root, f));
      assert.fail(`import cycle: ${cycle.join(' → ')}`);
    }
    state.set(file, 'visiting');
    stack.push(file);
    for (const d of graph.get(file) ?? []) visit(d);
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file);
});
