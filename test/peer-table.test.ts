/** The peer table against what a LAN host can send through discovery: floods of records, spoofed goodbyes. */
import test from 'ava';
import { createLogger } from '../daemon/common/log.js';
import type { PeerClient } from '../daemon/peers/peer-client.js';
import { PeerTable } from '../daemon/peers/peer-table.js';

/** A client whose peers answer /v1/info only at the addresses listed in `alive`. */
function fakeClient(alive: Map<string, string>) {
  return {
    info: async (peer: { url: string }) => {
      const id = alive.get(peer.url.slice('http://'.length));
      if (!id) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return { peerId: id, site: 'default', software: 't', protocol: 1, capabilities: [] };
    },
  } as unknown as PeerClient;
}

const log = createLogger('error', () => {});

test('a flood of discovered records that never answer cannot crowd out real peers, old or new', async (t) => {
  const alive = new Map([['198.18.0.2:7400', 'realpeer0001']]);
  const table = new PeerTable('self00000000', 'default', fakeClient(alive), log);
  table.addAddress('198.18.0.2', 7400, 'mdns', { expectId: 'realpeer0001', expiresAt: Date.now() + 120_000 });
  await table.probeAll();
  t.deepEqual(table.usable().map((p) => p.id), ['realpeer0001']);
  for (let i = 0; i < 600; i++) t.true(table.addAddress(`198.18.1.${i % 250}`, 7400 + Math.floor(i / 250), 'mdns', { expectId: `fake${String(i).padStart(8, '0')}`, expiresAt: Date.now() + 4500_000 }));
  // A real peer that appears after the flood still gets in, and the one we had stays.
  alive.set('198.18.0.3:7400', 'realpeer0002');
  t.true(table.addAddress('198.18.0.3', 7400, 'mdns', { expectId: 'realpeer0002', expiresAt: Date.now() + 120_000 }));
  await table.probeAll();
  t.deepEqual(table.usable().map((p) => p.id).sort(), ['realpeer0001', 'realpeer0002']);
  const probed = (table as unknown as { addresses: Map<string, { id?: string }> }).addresses;
  t.true([...probed.values()].filter((a) => !a.id).length <= 64, 'unconfirmed records are capped apart from peers');
});

test('a goodbye counts only from the peer\'s own address, and only once a probe confirms it is gone', async (t) => {
  const alive = new Map([['198.18.0.2:7400', 'realpeer0001']]);
  const table = new PeerTable('self00000000', 'default', fakeClient(alive), log);
  table.addAddress('198.18.0.2', 7400, 'mdns', { expectId: 'realpeer0001', expiresAt: Date.now() + 120_000 });
  await table.probeAll();
  t.is(await table.goodbye('realpeer0001', '198.18.0.66'), 'ignored', 'spoofed from another host');
  t.is(await table.goodbye('realpeer0001', '198.18.0.2'), 'alive', 'from its address, but it still answers');
  t.deepEqual(table.usable().map((p) => p.id), ['realpeer0001']);
  alive.clear();
  t.is(await table.goodbye('realpeer0001', '198.18.0.2'), 'forgotten');
  t.deepEqual(table.usable(), []);
});
