/** A hostile host: floods the LAN with fake shoal announcements (run inside a test namespace). */
import makeMdns from 'multicast-dns';
import { randomBytes } from 'node:crypto';

const count = Number(process.argv[2] ?? 1000);
const ip = process.argv[3];
const m = makeMdns({ interface: ip, bind: '0.0.0.0', reuseAddr: true });
let sent = 0;
const timer = setInterval(() => {
  for (let k = 0; k < 50 && sent < count; k++, sent++) {
    const id = randomBytes(9).toString('base64url');
    const inst = `fake-${id}._shoal._tcp.local`;
    const host = `fake-${id}.local`;
    const fakeIp = sent % 7 === 0 ? '127.0.0.1' : `198.18.0.${100 + (sent % 150)}`;
    m.respond({
      answers: [
        { name: '_shoal._tcp.local', type: 'PTR', ttl: 4500, data: inst },
        { name: inst, type: 'SRV', ttl: 120, data: { port: 7400, target: host } },
        { name: inst, type: 'TXT', ttl: 4500, data: [`id=${id}`, 'v=1', 'sf=open', 'caps=range'] },
        { name: host, type: 'A', ttl: 120, data: fakeIp },
      ],
    });
  }
  if (sent >= count) { clearInterval(timer); setTimeout(() => { m.destroy(); process.exit(0); }, 200); }
}, 20);
