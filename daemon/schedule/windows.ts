/** Daily time windows like "22:00-06:00" (local time; may wrap past midnight). */
import { ShoalError } from '../errors.js';

export interface Window { from: number; to: number; text: string }

export function parseWindow(text: string, key = 'window'): Window {
  const m = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$/.exec(text);
  if (!m) throw new ShoalError('bad-config', `config key ${key}: expected "HH:MM-HH:MM", got ${JSON.stringify(text)}`);
  const from = Number(m[1]) * 60 + Number(m[2]);
  const to = Number(m[3]) * 60 + Number(m[4]);
  if (from === to) throw new ShoalError('bad-config', `config key ${key}: an empty window`);
  return { from, to, text };
}

/** Whether the local time of `at` falls inside the window. */
export function inWindow(w: Window, at = new Date()): boolean {
  const t = at.getHours() * 60 + at.getMinutes();
  return w.from < w.to ? t >= w.from && t < w.to : t >= w.from || t < w.to;
}

/** No windows means always open. */
export function inAnyWindow(ws: Window[], at = new Date()): boolean {
  return ws.length === 0 || ws.some((w) => inWindow(w, at));
}
