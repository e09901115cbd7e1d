// The generated TypeScript client from Node, for other services: native gRPC (HTTP/2) to Envoy's
// port (or the server's own), a bearer token when auth is on, a rich error's ErrorInfo, and a
// server stream. tests/console/test_node_client.py bundles it with esbuild and runs it.
//
//   node example.mjs http://127.0.0.1:5000 192.168.1.100 [token]
//
// Prints one JSON object with what each call returned.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { FleetService } from "../gen/mining/analytics/v1alpha1/fleet_pb.js";
import { ScoringService } from "../gen/mining/analytics/v1alpha1/scoring_pb.js";

declare const process: { argv: string[] }; // Node's, without pulling in @types/node
const [baseUrl, minerId, token] = process.argv.slice(2);
const transport = createGrpcTransport({
  baseUrl,
  interceptors: token
    ? [
        (next) => async (req) => {
          req.header.set("authorization", `Bearer ${token}`);
          return next(req);
        },
      ]
    : [],
});
const fleet = createClient(FleetService, transport);
const scoring = createClient(ScoringService, transport);

// Unary.
const miner = await fleet.getMiner({ minerId });

// A rich error: NOT_FOUND with an ErrorInfo naming the reason.
let notFound: { code: string; reason: string; message: string } | null = null;
try {
  await fleet.getMiner({ minerId: "no-such-miner" });
} catch (error) {
  const failure = ConnectError.from(error);
  notFound = {
    code: Code[failure.code],
    reason: failure.findDetails(ErrorInfoSchema)[0]?.reason ?? "",
    message: failure.rawMessage,
  };
}

// A server stream: the first heartbeat, then stop (heartbeat_seconds=1).
const abort = new AbortController();
let heartbeat: { sequence: string; case: string | undefined } | null = null;
for await (const event of scoring.subscribeScores({ heartbeatSeconds: 1 }, { signal: abort.signal })) {
  heartbeat = { sequence: event.sequence.toString(), case: event.event.case };
  if (event.event.case === "heartbeat") break;
}
abort.abort();

console.log(JSON.stringify({ miner: { id: miner.minerId, site: miner.site, hardwareModel: miner.hardwareModel }, notFound, heartbeat }));
