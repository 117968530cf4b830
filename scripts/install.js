#!/usr/bin/env node
// The package's npm install step. On Linux it is node-gyp-build: use the shipped prebuild that fits
// this machine, or compile the addon from source when none does. Elsewhere it does nothing: the
// proxy needs Linux, the addon's sources only compile there, and the PROXY header codec needs no
// addon, so the package must install without a compiler. MMPROXY_FORCE_NO_NATIVE=1 takes the same
// path on Linux (the loader then refuses the addon too): a codec-only install, and how tests
// pretend to be another system.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

if (process.platform !== 'linux' || process.env.MMPROXY_FORCE_NO_NATIVE === '1') {
  const why =
    process.platform !== 'linux' ? `on ${process.platform}` : 'with MMPROXY_FORCE_NO_NATIVE=1';
  console.log(
    `mmproxy-native: no native addon ${why}; the PROXY header codec works, createProxy needs Linux.`,
  );
} else {
  const require = createRequire(import.meta.url);
  const result = spawnSync(process.execPath, [require.resolve('node-gyp-build/bin.js')], {
    stdio: 'inherit',
  });
  process.exitCode = result.status ?? 1;
}
