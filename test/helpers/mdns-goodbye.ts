/**
 * A hostile host: sends mDNS goodbyes (TTL 0) in the name of real peers, with
 * their ids and site fields, every `everyMs` for `seconds` (run inside a test namespace).
 * Usage: mdns-goodbye.js IP everyMs seconds id[,id…]
 */
import makeMdns from 'multicast-dns';

const [ip, everyMs, seconds, ids] = [process.argv[2], Number(process.argv[3] ?? 1000), Number(process.argv[4] ?? 10), (process.argv[5] ?? '').split(',')];
const m = makeMdns({ interface: ip, bind: '0.0.0.0', reuseAddr: true });
const started = Date.now();
const timer = setInterval(() => {
  for (const id of ids) {
    const inst = `spoof-${id}._shoal._tcp.local`;
    m.respond({
      answers: [
        { name: '_shoal._tcp.local', type: 'PTR', ttl: 0, data: inst },
        { name: inst, type: 'SRV', ttl: 0, data: { port: 7400, target: `spoof-${id}.local` } },
        { name: inst, type: 'TXT', ttl: 0, data: [`id=${id}`, 'v=1', 'sf=open', 'caps=range'] },
      ],
    });
  }
  if (Date.now() - started > seconds * 1000) { clearInterval(timer); m.destroy(); process.exit(0); }
}, everyMs);
