// The library from a CommonJS TypeScript file (require of the ESM package, Node >= 20.19),
// compiled by test/package-install.test.ts against the installed package's .d.ts files.
import mmproxy = require('mmproxy-native');
import codec = require('mmproxy-native/codec');

const header = codec.encodeHeader(
  {
    command: 'PROXY',
    protocol: 'TCP6',
    source: { address: '2001:db8::7', port: 51000 },
    destination: { address: '2001:db8::1', port: 443 },
  },
  { version: 1 },
);
const decoded = mmproxy.decodeHeader(header);
const clientAddress: string | undefined = decoded?.header.source?.address;

const proxy: mmproxy.Proxy = mmproxy.createProxy({ listen: '[::]:8443', target6: '[::1]:443' });
proxy.on('reject', (r: mmproxy.RejectInfo) => console.warn(r.reason));
const stats: mmproxy.ProxyStats = proxy.stats();
console.log(clientAddress, stats.active);

// @ts-expect-error: headerTimeout is a number of milliseconds
mmproxy.createProxy({ headerTimeout: '10s' });
