import type { FastifyInstance } from 'fastify';
import type { GitHubWebhooks } from '../webhooks/verify-and-receive.js';

/** POST /webhooks/github: the raw body goes to verification (HMAC over the exact bytes). */
export function registerWebhookRoutes(app: FastifyInstance, webhooks: GitHubWebhooks): void {
  app.post('/webhooks/github', async (req, reply) => {
    const out = await webhooks.receive(req.headers, Buffer.isBuffer(req.body) ? req.body : undefined);
    return reply.code(out.status).send(out.body);
  });
}
