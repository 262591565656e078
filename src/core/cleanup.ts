/**
 * A small stack of cleanup actions run in reverse order. Cleanup failures are reported through
 * `onError` and never thrown, so the error that caused the cleanup is not masked.
 * `AsyncDisposableStack` does not exist on Node 20; this is the part of it we need.
 */
export class CleanupStack implements AsyncDisposable {
  readonly #actions: { label: string; run: () => Promise<void> | void }[] = [];
  readonly #onError: (label: string, error: unknown) => void;
  #disposed = false;

  constructor(onError: (label: string, error: unknown) => void = () => {}) {
    this.#onError = onError;
  }

  defer(label: string, run: () => Promise<void> | void): void {
    if (this.#disposed) throw new Error(`CleanupStack already disposed; cannot defer '${label}'`);
    this.#actions.push({ label, run });
  }

  /** Registers a disposable and returns it, like `await using` would. */
  use<T extends AsyncDisposable | Disposable>(label: string, resource: T): T {
    this.defer(label, async () => {
      if (Symbol.asyncDispose in resource) await (resource as AsyncDisposable)[Symbol.asyncDispose]();
      else (resource as Disposable)[Symbol.dispose]();
    });
    return resource;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    while (this.#actions.length > 0) {
      const action = this.#actions.pop();
      if (action === undefined) break;
      try {
        await action.run();
      } catch (error) {
        this.#onError(action.label, error);
      }
    }
  }
}
