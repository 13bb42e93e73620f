import { Worker } from 'node:worker_threads';

/** Main-thread handle of hasher-worker: tell it how far the verified prefix reaches; get the digest at the end. */
export class SequentialHasher {
  private worker: Worker;
  private result: Promise<string>;

  constructor(file: string) {
    this.worker = new Worker(new URL('./hasher-worker.js', import.meta.url), { workerData: { file } });
    this.worker.unref();
    this.result = new Promise((resolve, reject) => {
      this.worker.on('message', (m: { digest?: string; error?: string }) => (m.error ? reject(new Error(m.error)) : resolve(m.digest!)));
      this.worker.on('error', reject);
    });
    this.result.catch(() => {});
  }

  advance(upto: number): void {
    this.worker.postMessage({ upto });
  }

  async finish(size: number): Promise<string> {
    this.worker.postMessage({ upto: size, finish: true });
    try {
      return await this.result;
    } finally {
      void this.worker.terminate();
    }
  }

  close(): void {
    void this.worker.terminate();
  }
}
