import type { FastifyInstance } from 'fastify';
import type { GitHubWebhooks } from '../webhooks/verify-and-receive.js';

/**
 * POST /webhooks/github: the raw body goes to verification (HMAC over the exact bytes). What the headers
 * alone refuse (no webhook secret, no signature of GitHub's form, no delivery or event) is answered before
 * the body is read, and the connection closed.
 */
export function registerWebhookRoutes(app: FastifyInstance, webhooks: GitHubWebhooks): void {
  app.post(
    '/webhooks/github',
    {
      onRequest: async (req, reply) => {
        const refused = webhooks.admits(req.headers);
        if (refused !== undefined) return reply.header('connection', 'close').code(refused.status).send(refused.body);
      },
    },
    async (req, reply) => {
      const out = await webhooks.receive(req.headers, Buffer.isBuffer(req.body) ? req.body : undefined);
      return reply.code(out.status).send(out.body);
    },
  );
}
