// Packs the project as `npm publish` would and installs the tarball into a fresh directory the way
// a user does, with every compiler on PATH replaced by a shim that fails loudly and without the
// network (dependencies come from npm's cache, which the project's own `npm ci` filled, through a
// lockfile made from ours, so this runs inside test/run.js's namespace that has only `lo`). Then it
// uses the install: the mmproxy command, ESM and CommonJS imports that must load the shipped
// prebuild, the loader's path for systems without the addon, and test/consumer's TypeScript and
// every example in the README (and docs/API.md) compiled against the published .d.ts files.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const prebuildDir = path.join(root, 'prebuilds', `linux-${process.arch}`);
const inNamespace = process.env.MMPROXY_TEST_NETNS === '1';
const COMPILERS = ['cc', 'gcc', 'g++', 'c++', 'clang', 'clang++', 'make'];

interface PackResult {
  filename: string;
  integrity: string;
  files: { path: string }[];
}

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dev?: boolean;
  [key: string]: unknown;
}

function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number },
): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    encoding: 'utf8',
    timeout: options.timeout ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  return result;
}

function describeRun(what: string, r: SpawnSyncReturns<string>): string {
  return `${what} exited ${r.status ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

function newestMtime(file: string): number {
  const st = statSync(file);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(file).map((f) => newestMtime(path.join(file, f))));
}

/** Runs scripts/prebuild.js when the host's prebuild is missing or older than the sources. */
function ensurePrebuild(): void {
  const existing = existsSync(prebuildDir)
    ? readdirSync(prebuildDir).filter((f) => f.endsWith('.node'))
    : [];
  const sources = Math.max(
    newestMtime(path.join(root, 'native')),
    newestMtime(path.join(root, 'binding.gyp')),
  );
  const fresh =
    existing.length > 0 &&
    existing.every((f) => statSync(path.join(prebuildDir, f)).mtimeMs >= sources);
  if (fresh) return;
  const r = run(process.execPath, [path.join(root, 'scripts', 'prebuild.js')], {
    cwd: root,
    timeout: 20 * 60_000,
  });
  assert.equal(r.status, 0, describeRun('node scripts/prebuild.js', r));
}

/** npm's cache directory, where `npm ci` left every dependency's tarball. */
function npmCache(): string {
  if (process.env.npm_config_cache) return process.env.npm_config_cache;
  const r = run('npm', ['config', 'get', 'cache'], { cwd: root });
  assert.equal(r.status, 0, describeRun('npm config get cache', r));
  return r.stdout.trim();
}

/** A directory of `cc`, `g++`, `make`… that record their call and fail: no compiler on PATH. */
function compilerShims(dir: string, log: string): void {
  mkdirSync(dir, { recursive: true });
  for (const name of COMPILERS) {
    const file = path.join(dir, name);
    writeFileSync(
      file,
      `#!/bin/sh\necho "$0 $*" >> '${log}'\n` +
        `echo "package-install test: '$0' was run, but installing must not compile anything" >&2\n` +
        `exit 97\n`,
    );
    chmodSync(file, 0o755);
  }
}

/**
 * A project that depends on the tarball, with a lockfile that pins the package's dependencies
 * exactly as ours does (minus devDependencies), so `npm ci --offline` finds each in the cache by
 * its integrity and never asks the registry.
 */
function consumerProject(dir: string, tarball: string, integrity: string): void {
  mkdirSync(dir, { recursive: true });
  const tgz = path.basename(tarball);
  cpSync(tarball, path.join(dir, tgz));
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    license?: string;
    dependencies?: Record<string, string>;
    bin?: Record<string, string>;
    engines?: Record<string, string>;
    scripts?: Record<string, string>;
  };
  const ours = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const registry = 'https://registry.npmjs.org/';
  const packages: Record<string, LockEntry> = {
    '': { name: 'consumer', dependencies: { [pkg.name]: `file:${tgz}` } },
    [`node_modules/${pkg.name}`]: {
      version: pkg.version,
      resolved: `file:${tgz}`,
      integrity,
      ...(pkg.scripts?.install ? { hasInstallScript: true } : {}),
      ...(pkg.license ? { license: pkg.license } : {}),
      ...(pkg.dependencies ? { dependencies: pkg.dependencies } : {}),
      ...(pkg.bin ? { bin: pkg.bin } : {}),
      ...(pkg.engines ? { engines: pkg.engines } : {}),
    },
  };
  for (const [key, entry] of Object.entries(ours.packages)) {
    if (key === '' || entry.dev) continue;
    assert.ok(entry.integrity, `package-lock.json has no integrity for ${key}`);
    const name = key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
    const base = name.slice(name.lastIndexOf('/') + 1);
    packages[key] = {
      ...entry,
      resolved: entry.resolved ?? `${registry}${name}/-/${base}-${entry.version}.tgz`,
    };
  }
  writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({
      name: 'consumer',
      private: true,
      dependencies: { [pkg.name]: `file:${tgz}` },
    }),
  );
  writeFileSync(
    path.join(dir, 'package-lock.json'),
    JSON.stringify({ name: 'consumer', lockfileVersion: 3, requires: true, packages }, null, 2),
  );
}

// What a user's script sees: the codec, createProxy, and which addon file the process mapped.
const PROBE_BODY = `
const out = {};
const v1 = Buffer.from('PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\\r\\nGET / HTTP/1.0\\r\\n');
const d = decodeHeader(v1);
out.decoded = { source: d.header.source, destination: d.header.destination, length: d.length };
out.roundTrip = codecDecodeHeader(encodeHeader(d.header, { version: 2 })).header.source;
let proxy = null;
try {
  proxy = createProxy({ listen: '127.0.0.1:0', target4: '127.0.0.1:9', target6: '[::1]:9' });
  out.created = proxy.constructor.name;
} catch (e) {
  out.error = { code: e.code, message: e.message };
}
if (proxy && process.env.PROBE_LISTEN === '1') {
  await proxy.listen();
  out.address = proxy.address();
  await proxy.close();
  out.closed = true;
}
out.mappedAddons = [...new Set(readFileSync('/proc/self/maps', 'utf8').split('\\n')
  .map((line) => line.trim().split(/\\s+/)[5]).filter((p) => p && p.endsWith('.node')))];
try {
  out.nodeGypBuild = requireFromPackage('node-gyp-build').resolve(packageDir);
} catch (e) {
  out.nodeGypBuild = 'none: ' + e.message.split('\\n')[0];
}
process.stdout.write(JSON.stringify(out));
`;

const ESM_PROBE = `
import { createProxy, decodeHeader, encodeHeader } from 'mmproxy-native';
import { decodeHeader as codecDecodeHeader } from 'mmproxy-native/codec';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const packageJson = fileURLToPath(import.meta.resolve('mmproxy-native/package.json'));
const packageDir = path.dirname(packageJson);
const requireFromPackage = createRequire(packageJson);
${PROBE_BODY}`;

const CJS_PROBE = `
const { createProxy, decodeHeader, encodeHeader } = require('mmproxy-native');
const { decodeHeader: codecDecodeHeader } = require('mmproxy-native/codec');
const { readFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const packageJson = require.resolve('mmproxy-native/package.json');
const packageDir = path.dirname(packageJson);
const requireFromPackage = createRequire(packageJson);
(async () => {
${PROBE_BODY}
})().catch((e) => { console.error(e); process.exitCode = 1; });`;

interface Probe {
  decoded: { source: unknown; destination: unknown; length: number };
  roundTrip: unknown;
  created?: string;
  error?: { code: string; message: string };
  address?: { address: string; port: number; family: string };
  closed?: boolean;
  mappedAddons: string[];
  nodeGypBuild: string;
}

const EXPECTED_DECODE = {
  source: { address: '203.0.113.7', port: 51000 },
  destination: { address: '192.0.2.1', port: 443 },
  length: 44,
};

let work = '';
let env: NodeJS.ProcessEnv = {};
let shimLog = '';
let pack: PackResult;
let installDir = '';
let installedPackage = '';

function probe(file: string, extraEnv: NodeJS.ProcessEnv = {}, cwd = installDir): Probe {
  const r = run(process.execPath, [file], { cwd, env: { ...env, ...extraEnv } });
  assert.equal(r.status, 0, describeRun(`node ${file}`, r));
  return JSON.parse(r.stdout) as Probe;
}

function assertNoCompilerRan(): void {
  const calls = existsSync(shimLog) ? readFileSync(shimLog, 'utf8') : '';
  assert.equal(calls, '', `the install ran a compiler:\n${calls}`);
}

describe('the packed package, installed without a compiler or network', () => {
  before(() => {
    ensurePrebuild();
    assert.ok(
      existsSync(path.join(root, 'dist', 'lib', 'index.js')) &&
        existsSync(path.join(root, 'dist', 'cli', 'bin.js')),
      'dist/ is missing: run `npm run build` first (`npm test` does)',
    );
    work = mkdtempSync(path.join(os.tmpdir(), 'mmproxy-package-install-'));
    const cache = npmCache();
    shimLog = path.join(work, 'compiler-calls.log');
    const shims = path.join(work, 'no-compiler-bin');
    compilerShims(shims, shimLog);

    // The environment a user's shell would have: none of our npm run's settings, no compiler.
    env = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) =>
          !/^npm_/i.test(k) &&
          !['CC', 'CXX', 'LINK', 'CPP', 'MMPROXY_FORCE_NO_NATIVE', 'INIT_CWD'].includes(k),
      ),
    );
    env.PATH = `${shims}${path.delimiter}${process.env.PATH ?? ''}`;
    env.npm_config_cache = cache;
    env.npm_config_offline = 'true';
    env.npm_config_audit = 'false';
    env.npm_config_fund = 'false';
    env.npm_config_update_notifier = 'false';

    const packed = run('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: root,
      env,
    });
    assert.equal(packed.status, 0, describeRun('npm pack', packed));
    const packs = JSON.parse(packed.stdout) as PackResult[];
    assert.equal(packs.length, 1);
    pack = packs[0]!;

    installDir = path.join(work, 'app');
    consumerProject(installDir, path.join(work, pack.filename), pack.integrity);
    const installed = run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], {
      cwd: installDir,
      env,
      timeout: 300_000,
    });
    assert.equal(
      installed.status,
      0,
      describeRun('npm ci --offline of the packed tarball', installed) +
        (/ENOTCACHED/.test(installed.stderr)
          ? `\nA dependency is not in npm's cache (${cache}): run \`npm ci\` in ${root} first.`
          : ''),
    );
    installedPackage = path.join(installDir, 'node_modules', 'mmproxy-native');
    writeFileSync(path.join(installDir, 'probe.mjs'), ESM_PROBE);
    writeFileSync(path.join(installDir, 'probe.cjs'), CJS_PROBE);
  });

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the tarball holds what a user needs and nothing else', () => {
    const files = pack.files.map((f) => f.path).sort();
    const needed = [
      'package.json',
      'README.md',
      'CHANGELOG.md',
      'LICENSE',
      'docs/API.md',
      'binding.gyp',
      'scripts/install.js',
      'dist/lib/index.js',
      'dist/lib/index.d.ts',
      'dist/lib/codec/index.js',
      'dist/lib/codec/index.d.ts',
      'dist/cli/bin.js',
    ];
    for (const f of needed) assert.ok(files.includes(f), `${f} is missing from the tarball`);
    assert.ok(
      files.some((f) => f.startsWith(`prebuilds/linux-${process.arch}/`) && f.endsWith('.node')),
      `no prebuilds/linux-${process.arch}/*.node in the tarball`,
    );
    assert.ok(
      files.some((f) => f.startsWith('native/') && f.endsWith('.cc')),
      'no native/ sources',
    );
    const unwanted = files.filter(
      (f) =>
        /^(test|bench|lib|cli|build|node_modules|\.ci|\.scratch)\//.test(f) ||
        (f.startsWith('docs/') && f !== 'docs/API.md') ||
        /^dist\/(test|bench)\//.test(f) ||
        f === 'scripts/prebuild.js' ||
        f.endsWith('.map') ||
        f.endsWith('.tgz') ||
        (f.startsWith('dist/cli/') && f.endsWith('.d.ts')),
    );
    assert.deepEqual(unwanted, [], 'files a user does not need');
  });

  test('installing ran no compiler and used the prebuild', () => {
    assertNoCompilerRan();
    assert.ok(existsSync(installedPackage), `${installedPackage} is not there`);
    assert.equal(
      existsSync(path.join(installedPackage, 'build')),
      false,
      'the install built the addon from source (build/ exists)',
    );
    const shipped = readdirSync(path.join(installedPackage, 'prebuilds', `linux-${process.arch}`));
    assert.ok(
      shipped.some((f) => f.endsWith('.node')),
      `prebuilds: ${shipped.join(', ')}`,
    );
  });

  test('npx mmproxy --version prints the package version', () => {
    const r = run('npx', ['--offline', 'mmproxy', '--version'], { cwd: installDir, env });
    assert.equal(r.status, 0, describeRun('npx mmproxy --version', r));
    const version = (
      JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
    assert.equal(r.stdout, `mmproxy ${version}\n`);
  });

  test('npx mmproxy check runs every check with the prebuilt addon', () => {
    const r = run('npx', ['--offline', 'mmproxy', 'check'], { cwd: installDir, env });
    // 1: some check failed, as it should where nothing listens on the default targets.
    assert.ok(r.status === 0 || r.status === 1, describeRun('npx mmproxy check', r));
    const items = r.stdout.split('\n').filter((l) => /^(OK|FAIL|SKIP) +\S.*: /.test(l));
    assert.ok(items.length >= 2, describeRun('npx mmproxy check printed no item lines;', r));
    assert.match(r.stdout, /^(All \d+ checks passed.*|\d+ of \d+ checks failed)\.$/m);
    const transparent = items.filter((l) => l.includes('transparent IPv'));
    assert.ok(transparent.length > 0, describeRun('no transparent-socket item', r));
    for (const line of transparent) {
      assert.doesNotMatch(line, /native addon|needs Linux/, 'the CLI could not load the addon');
      // In test/run.js's namespace this process may set IP_TRANSPARENT.
      if (inNamespace) assert.match(line, /^OK /);
    }
  });

  for (const [kind, file] of [
    ['ESM import', 'probe.mjs'],
    ['CommonJS require', 'probe.cjs'],
  ] as const) {
    test(`${kind}: the codec works and createProxy loads the shipped prebuild`, () => {
      const p = probe(file);
      assert.deepEqual(p.decoded, EXPECTED_DECODE);
      assert.deepEqual(p.roundTrip, EXPECTED_DECODE.source);
      assert.equal(p.error, undefined, `createProxy threw: ${JSON.stringify(p.error)}`);
      assert.equal(p.created, 'Proxy');
      const prebuilds =
        path.join(installedPackage, 'prebuilds', `linux-${process.arch}`) + path.sep;
      assert.equal(p.mappedAddons.length, 1, `addons mapped: ${p.mappedAddons.join(', ')}`);
      assert.ok(p.mappedAddons[0]!.startsWith(prebuilds), `mapped ${p.mappedAddons[0]}`);
      assert.ok(p.nodeGypBuild.startsWith(prebuilds), `node-gyp-build resolves ${p.nodeGypBuild}`);
    });
  }

  test(
    'the installed proxy listens and closes',
    { skip: inNamespace ? false : 'needs IP_TRANSPARENT: runs inside test/run.js’s namespace' },
    () => {
      for (const file of ['probe.mjs', 'probe.cjs']) {
        const p = probe(file, { PROBE_LISTEN: '1' });
        assert.equal(p.address?.address, '127.0.0.1', `${file}: ${JSON.stringify(p)}`);
        assert.ok((p.address?.port ?? 0) > 0);
        assert.equal(p.closed, true);
      }
    },
  );

  test('without the addon (MMPROXY_FORCE_NO_NATIVE=1): codec works, createProxy needs Linux', () => {
    for (const file of ['probe.mjs', 'probe.cjs']) {
      const p = probe(file, { MMPROXY_FORCE_NO_NATIVE: '1' });
      assert.deepEqual(p.decoded, EXPECTED_DECODE, file);
      assert.deepEqual(p.roundTrip, EXPECTED_DECODE.source, file);
      assert.equal(p.created, undefined, `${file}: createProxy must throw`);
      assert.equal(p.error?.code, 'ERR_MMPROXY_NATIVE_UNAVAILABLE', file);
      assert.match(p.error?.message ?? '', /needs Linux/, file);
      assert.deepEqual(p.mappedAddons, [], `${file}: an addon was loaded anyway`);
    }
    const version = run('npx', ['--offline', 'mmproxy', '--version'], {
      cwd: installDir,
      env: { ...env, MMPROXY_FORCE_NO_NATIVE: '1' },
    });
    assert.equal(version.status, 0, describeRun('npx mmproxy --version', version));
    const check = run('npx', ['--offline', 'mmproxy', 'check'], {
      cwd: installDir,
      env: { ...env, MMPROXY_FORCE_NO_NATIVE: '1' },
    });
    assert.equal(check.status, 1, describeRun('npx mmproxy check without the addon', check));
    assert.match(check.stdout, /^FAIL +transparent IPv4 sockets: .*needs Linux/m);
  });

  test('installs where no prebuild fits and no compiler exists, when the addon is not wanted', () => {
    // A system without a prebuild of its own (macOS, say): the same package minus prebuilds/.
    const unpacked = path.join(work, 'unpacked');
    mkdirSync(unpacked);
    const untar = run('tar', ['-xzf', path.join(work, pack.filename), '-C', unpacked], {
      cwd: work,
    });
    assert.equal(untar.status, 0, describeRun('tar -x', untar));
    rmSync(path.join(unpacked, 'package', 'prebuilds'), { recursive: true, force: true });
    const bare = path.join(work, 'bare');
    mkdirSync(bare);
    const repacked = run(
      'npm',
      ['pack', '--json', '--ignore-scripts', '--pack-destination', bare],
      {
        cwd: path.join(unpacked, 'package'),
        env,
      },
    );
    assert.equal(repacked.status, 0, describeRun('npm pack without prebuilds', repacked));
    const barePack = (JSON.parse(repacked.stdout) as PackResult[])[0]!;
    assert.ok(!barePack.files.some((f) => f.path.startsWith('prebuilds/')));

    const dir = path.join(work, 'app-without-addon');
    consumerProject(dir, path.join(bare, barePack.filename), barePack.integrity);
    const installEnv = { ...env, MMPROXY_FORCE_NO_NATIVE: '1' };
    const installed = run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], {
      cwd: dir,
      env: installEnv,
      timeout: 300_000,
    });
    assert.equal(installed.status, 0, describeRun('npm ci without a prebuild', installed));
    assertNoCompilerRan();
    assert.equal(existsSync(path.join(dir, 'node_modules', 'mmproxy-native', 'build')), false);
    writeFileSync(path.join(dir, 'probe.mjs'), ESM_PROBE);
    const p = probe('probe.mjs', installEnv, dir);
    assert.deepEqual(p.decoded, EXPECTED_DECODE);
    assert.equal(p.error?.code, 'ERR_MMPROXY_NATIVE_UNAVAILABLE');
    assert.match(p.error?.message ?? '', /needs Linux/);
  });

  test('test/consumer and the docs’ examples compile against the published .d.ts files', () => {
    const dir = path.join(installDir, 'consumer');
    cpSync(path.join(root, 'test', 'consumer'), dir, { recursive: true });
    const base = JSON.parse(
      readFileSync(path.join(dir, 'tsconfig.json'), 'utf8').replace(/^\s*\/\/.*$/gm, ''),
    ) as { files: string[] };
    // Every js/ts block of the shipped README (and of docs/API.md, its draft) that uses the
    // package, each as a module of its own.
    const examples: string[] = [];
    const docs = [path.join(installedPackage, 'README.md'), path.join(root, 'docs', 'API.md')];
    for (const doc of docs.filter((f) => existsSync(f))) {
      const text = readFileSync(doc, 'utf8');
      for (const m of text.matchAll(/^```(js|ts|javascript|typescript)\n([\s\S]*?)^```/gm)) {
        const code = m[2]!;
        if (!code.includes("'mmproxy-native")) continue;
        const line = text.slice(0, m.index).split('\n').length;
        const name = `example-${path.basename(doc, '.md')}-${line}.${code.includes('require(') ? 'cts' : 'mts'}`;
        writeFileSync(
          path.join(dir, name),
          `// ${path.relative(installDir, doc)}, line ${line}\n${code}`,
        );
        examples.push(name);
      }
    }
    assert.ok(
      examples.some((f) => f.startsWith('example-README-')),
      'the README shows no example that uses the package',
    );
    // The consumer's own tsconfig, plus where @types/node is (the install has no devDependencies).
    writeFileSync(
      path.join(dir, 'tsconfig.test.json'),
      JSON.stringify({
        extends: './tsconfig.json',
        compilerOptions: { typeRoots: [path.join(root, 'node_modules', '@types')] },
        files: [...base.files, ...examples],
      }),
    );
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = run(process.execPath, [tsc, '-p', 'tsconfig.test.json'], { cwd: dir, env });
    assert.equal(r.status, 0, describeRun(`tsc -p test/consumer (+ ${examples.join(', ')})`, r));
    // The types came from the installed package, not from this checkout.
    const listed = run(process.execPath, [tsc, '-p', 'tsconfig.test.json', '--listFiles'], {
      cwd: dir,
      env,
    });
    assert.equal(listed.status, 0, describeRun('tsc --listFiles', listed));
    const ours = listed.stdout.split('\n').filter((f) => f.includes('mmproxy-native'));
    assert.ok(ours.some((f) => f.startsWith(path.join(installedPackage, 'dist', 'lib'))));
    assert.deepEqual(
      ours.filter((f) => !f.startsWith(installedPackage)),
      [],
    );
  });
});
