/**
 * Baseline 1, the framework's floor: a bare Express 5 app with default
 * settings answering a fixed JSON body (the shape of `/api/me`) on every GET.
 * No middleware, no authentication, no database. Started by bench/run.ts.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';

const body = { id: '1', username: 'bench_floor', roles: [] as string[] };

const app = express();
app.get('/{*path}', (_req, res) => {
  res.json(body);
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
