#!/usr/bin/env node
// Builds the prebuilt addons the npm package ships, prebuilds/linux-<arch>/*.node, with
// prebuildify (one Node-API build serves every Node version), in a scratch copy of the sources so
// that the working tree's build/ (which tests and other builds use) is never touched; then checks
// each file: the host's must load and speak lib/'s interface, a cross build must be an ELF for its
// machine.
//   node scripts/prebuild.js                 the host's architecture (x64 or arm64)
//   node scripts/prebuild.js --arch arm64    one architecture (repeatable); cross builds need
//                                            Debian's g++-<triple> cross compiler on PATH
//   node scripts/prebuild.js --all           every architecture we ship (linux-x64, linux-arm64)
// Works offline when this Node's headers are installed next to it (<prefix>/include/node), as
// with the official tarballs and the NodeSource/Debian packages.
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readSync,
  closeSync,
  readdirSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));

/** What we ship, with the cross toolchain each needs when it is not the host's architecture. */
const TARGETS = {
  x64: { triple: 'x86_64-linux-gnu', apt: 'g++-x86-64-linux-gnu', elfMachine: 62 },
  arm64: { triple: 'aarch64-linux-gnu', apt: 'g++-aarch64-linux-gnu', elfMachine: 183 },
};

function fail(message) {
  console.error(`prebuild: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const arches = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--all') arches.push(...Object.keys(TARGETS));
    else if (arg === '--arch') arches.push(argv[++i] ?? fail('--arch needs a value: --arch arm64'));
    else if (arg.startsWith('--arch=')) arches.push(arg.slice('--arch='.length));
    else
      fail(
        `unknown argument ${JSON.stringify(arg)}; usage: node scripts/prebuild.js [--arch x64|arm64]... [--all]`,
      );
  }
  if (arches.length === 0) arches.push(os.arch());
  for (const arch of arches) {
    if (!(arch in TARGETS))
      fail(
        `no prebuild target for arch ${JSON.stringify(arch)}; known: ${Object.keys(TARGETS).join(', ')}`,
      );
  }
  return [...new Set(arches)];
}

function onPath(command) {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', command]).status === 0;
}

/** The environment that makes node-gyp compile for `arch`: a cross compiler unless it is the host's. */
function toolchainEnv(arch) {
  if (arch === os.arch()) return {};
  const { triple, apt } = TARGETS[arch];
  const missing = ['gcc', 'g++', 'strip'].map((t) => `${triple}-${t}`).filter((c) => !onPath(c));
  if (missing.length > 0) {
    fail(
      `cross-compiling for ${arch} needs ${missing.join(', ')}; on Debian/Ubuntu: ` +
        `apt-get install --no-install-recommends ${apt}`,
    );
  }
  return {
    CC: `${triple}-gcc`,
    CXX: `${triple}-g++`,
    LINK: `${triple}-g++`,
    AR: `${triple}-ar`,
    PREBUILD_STRIP_BIN: `${triple}-strip`,
  };
}

/** Node's headers installed next to this node binary, so node-gyp needs no download. */
function localNodeDir() {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
}

function elfMachine(file) {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(20);
    readSync(fd, head, 0, 20, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46) return -1;
    return head.readUInt16LE(18);
  } finally {
    closeSync(fd);
  }
}

function buildOne(arch) {
  const scratch = mkdtempSync(path.join(os.tmpdir(), `mmproxy-prebuild-${arch}-`));
  const out = path.join(root, 'prebuilds', `linux-${arch}`);
  try {
    for (const entry of ['binding.gyp', 'package.json', 'native']) {
      cpSync(path.join(root, entry), path.join(scratch, entry), { recursive: true });
    }
    // binding.gyp asks node for node-addon-api's include directory from the build directory.
    symlinkSync(path.join(root, 'node_modules'), path.join(scratch, 'node_modules'), 'dir');
    rmSync(out, { recursive: true, force: true });

    const env = { ...process.env, ...toolchainEnv(arch), JOBS: String(os.availableParallelism()) };
    delete env.npm_config_build_from_source;
    const nodedir = env.npm_config_nodedir || localNodeDir();
    if (nodedir) env.npm_config_nodedir = nodedir;
    const args = [
      require.resolve('prebuildify/bin.js'),
      '--napi',
      '--strip',
      '--tag-libc',
      `--target=${process.versions.node}`,
      `--arch=${arch}`,
      `--cwd=${scratch}`,
      `--out=${root}`,
    ];
    console.error(`prebuild: linux-${arch}${nodedir ? ` (headers from ${nodedir})` : ''}`);
    const result = spawnSync(process.execPath, args, { cwd: scratch, env, stdio: 'inherit' });
    if (result.status !== 0)
      fail(`prebuildify for ${arch} failed (exit ${result.status ?? result.signal})`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }

  const files = existsSync(out) ? readdirSync(out).filter((f) => f.endsWith('.node')) : [];
  if (files.length !== 1)
    fail(`expected one .node file in ${out}, found ${files.length}: ${files.join(', ')}`);
  const file = path.join(out, files[0]);
  const machine = elfMachine(file);
  if (machine !== TARGETS[arch].elfMachine) {
    fail(`${file} is ELF machine ${machine}, not ${TARGETS[arch].elfMachine} (${arch})`);
  }
  if (arch === os.arch()) {
    // The host can load its own build: it must, and it must speak the interface lib/ expects.
    const probe = spawnSync(
      process.execPath,
      ['-e', 'process.stdout.write(String(require(process.argv[1]).interfaceVersion))', file],
      { encoding: 'utf8' },
    );
    if (probe.status !== 0) fail(`${file} does not load: ${probe.stderr.trim()}`);
    console.error(`prebuild: ${path.relative(root, file)} loads (interface ${probe.stdout})`);
  } else {
    console.error(
      `prebuild: ${path.relative(root, file)} is an ${arch} ELF (not loadable on this host)`,
    );
  }
}

if (process.platform !== 'linux') fail(`prebuilds are built on Linux; this is ${process.platform}`);
for (const arch of parseArgs(process.argv.slice(2))) buildOne(arch);
