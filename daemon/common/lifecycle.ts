/**
 * Components with a lifecycle: started in the order they were added, stopped
 * in reverse. A start that fails stops what had started, so a daemon that
 * cannot come up leaves no listener or timer behind.
 */
export interface Component {
  readonly name: string;
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
}

export class Lifecycle {
  private components: Component[] = [];
  private started: Component[] = [];
  private stopping: Promise<void> | undefined;

  add<T extends Component>(c: T): T {
    this.components.push(c);
    return c;
  }

  async start(): Promise<void> {
    for (const c of this.components) {
      try {
        await c.start?.();
      } catch (e) {
        await this.stop();
        throw e;
      }
      this.started.push(c);
    }
  }

  /** Stops every started component, newest first; a failing stop does not keep the others running. */
  stop(onError: (name: string, e: unknown) => void = () => {}): Promise<void> {
    return (this.stopping ??= (async () => {
      for (const c of this.started.reverse()) {
        try {
          await c.stop?.();
        } catch (e) {
          onError(c.name, e);
        }
      }
      this.started = [];
    })());
  }
}
