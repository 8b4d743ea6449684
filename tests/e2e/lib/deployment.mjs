// Several whole stacks (nginx with the module and signalrd each) sharing
// one redis-server: the deployment the Redis backplane is for, with every
// host behind a load balancer reduced to a port of its own.
import { startRedis } from './redis.mjs';
import { startStack } from './stack.mjs';

// stacks: one options object per stack, as startStack takes them (env,
// restartDaemon, waitHealthy); env applies to every stack before its own.
export async function startDeployment({ stacks = [{}, {}], env = {} } = {}) {
    const redis = await startRedis();
    const started = [];
    try {
        for (const options of stacks) {
            started.push(await startStack({
                ...options,
                env: { ...env, ...(options.env ?? {}) },
                redisUrl: redis.url,
            }));
        }
    } catch (err) {
        await Promise.all(started.map((s) => s.stop()));
        await redis.destroy();
        throw err;
    }
    return {
        redis,
        stacks: started,
        async stop() {
            await Promise.all(started.map((s) => s.stop()));
            await redis.destroy();
        },
    };
}
