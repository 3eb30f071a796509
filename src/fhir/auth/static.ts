import type { AuthProvider } from './provider.js';

/** Static credentials: the same headers on every request; a 401 cannot be helped by asking again. */
class StaticAuth implements AuthProvider {
  constructor(
    readonly kind: string,
    private readonly fixed: Record<string, string>,
  ) {}

  async headers(): Promise<Record<string, string>> {
    return this.fixed;
  }

  async refresh(): Promise<boolean> {
    return false;
  }
}

export function noAuth(): AuthProvider {
  return new StaticAuth('none', {});
}

export function bearerAuth(token: string): AuthProvider {
  return new StaticAuth('bearer', { authorization: `Bearer ${token}` });
}

export function basicAuth(username: string, password: string): AuthProvider {
  return new StaticAuth('basic', { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` });
}
