// The generated clients over gRPC-web (same origin, through Envoy's grpc_web filter), the bearer
// token from session storage on every call, and errors as sentences an operator can act on.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { FleetService } from "../gen/mining/analytics/v1alpha1/fleet_pb.js";
import { ScoringService } from "../gen/mining/analytics/v1alpha1/scoring_pb.js";
import { TelemetryService } from "../gen/mining/analytics/v1alpha1/telemetry_pb.js";
import { TrainingService } from "../gen/mining/analytics/v1alpha1/training_pb.js";

const TOKEN_KEY = "mfh.token";

/** The token lives in session storage (gone when the tab closes), never in a URL. */
export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const bearer: Interceptor = (next) => async (req) => {
  const value = token();
  if (value) req.header.set("authorization", `Bearer ${value}`);
  return next(req);
};

export const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [bearer],
});

export const fleet = createClient(FleetService, transport);
export const scoring = createClient(ScoringService, transport);
export const telemetry = createClient(TelemetryService, transport);
export const training = createClient(TrainingService, transport);

export function code(error: unknown): Code | null {
  return error instanceof ConnectError ? error.code : null;
}

/** The ErrorInfo reason of a rich error ("" when it carries none). */
export function reason(error: unknown): string {
  if (!(error instanceof ConnectError)) return "";
  return error.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

/** One sentence per failure, for people: what happened and what to do. */
export function sentence(error: unknown, action = "That"): string {
  if (!(error instanceof ConnectError)) {
    return `${action} failed in the browser: ${String(error)}.`;
  }
  const detail = error.rawMessage.replace(/[.\s]+$/, "");
  switch (error.code) {
    case Code.Unauthenticated:
      return `You are not signed in or your token was not accepted (${detail}). Enter a valid token.`;
    case Code.PermissionDenied:
      return `Your token may not do this (${detail}). Ask an administrator for a token with that role.`;
    case Code.NotFound:
      return `Not found: ${detail}.`;
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return `${action} was refused: ${detail}.`;
    case Code.ResourceExhausted:
      return `Too many requests just now (${detail}). Wait a moment and try again.`;
    case Code.Unavailable:
      return `The server cannot be reached right now (${detail}). It will be retried.`;
    case Code.DeadlineExceeded:
      return `The server took too long to answer. Try again.`;
    default:
      return `${action} failed on the server (${detail}).`;
  }
}
