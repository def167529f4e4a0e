export { NudgeUnauthorized, TaskProtocolError } from './errors.ts';
export {
  type ClientCertificate,
  HttpTaskClient,
  type HttpTaskClientOptions,
  type ServedCertificate,
} from './http-task-client.ts';
