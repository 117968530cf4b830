// The addon loads through lib/native.ts and its transparent-socket probe tells the truth.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { loadNative, nativeUnavailableReason, NATIVE_INTERFACE_VERSION } from '../lib/native.js';
import { runWithCapabilities } from './helpers/net.js';

test('the addon loads and speaks the interface lib/ expects', () => {
  assert.equal(nativeUnavailableReason(), null);
  assert.equal(loadNative().interfaceVersion, NATIVE_INTERFACE_VERSION);
});

test('inside the test namespace transparent sockets are allowed for both families', () => {
  assert.equal(process.env.MMPROXY_TEST_NETNS, '1', 'tests run through test/run.js');
  assert.deepEqual(loadNative().probeTransparent(4), { ok: true });
  assert.deepEqual(loadNative().probeTransparent(6), { ok: true });
});

test('without CAP_NET_ADMIN/CAP_NET_RAW the probe reports EPERM and names the call', () => {
  // setpriv drops every capability of the namespace's root for the child.
  const script =
    `import('${new URL('../lib/native.js', import.meta.url).href}')` +
    `.then(m => console.log(JSON.stringify(m.loadNative().probeTransparent(4))))`;
  const result = runWithCapabilities(script) as { ok: boolean; errno: number; syscall: string };
  assert.equal(result.ok, false);
  assert.equal(result.errno, 1);
  assert.equal(result.syscall, 'setsockopt(IPPROTO_IP, IP_TRANSPARENT, 1)');
});

test('MMPROXY_FORCE_NO_NATIVE takes the path of a system where the addon cannot load', () => {
  const script =
    `import('${new URL('../lib/native.js', import.meta.url).href}')` +
    `.then(m => { const e = m.nativeUnavailableReason(); console.log(JSON.stringify({code: e.code, message: e.message})); })`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, MMPROXY_FORCE_NO_NATIVE: '1' },
  });
  assert.equal(r.status, 0, r.stderr.toString());
  const { code, message } = JSON.parse(r.stdout.toString());
  assert.equal(code, 'ERR_MMPROXY_NATIVE_UNAVAILABLE');
  assert.match(message, /needs Linux/);
});
