/** The Powertools singletons every handler shares (one per Lambda execution environment). */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';

const serviceName = process.env.POWERTOOLS_SERVICE_NAME ?? 'portcullis';

export const logger = new Logger({ serviceName });
export const metrics = new Metrics({
  serviceName,
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'Portcullis',
  ...(process.env.FLEET_NAME ? { defaultDimensions: { fleet: process.env.FLEET_NAME } } : {}),
});
export const tracer = new Tracer({ serviceName });
