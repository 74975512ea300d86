// @pixsim/session-client: pixsim.session.v1.SessionService from a browser (gRPC-Web).
export * from "./client.js";
export * from "./ops.js";
export * from "./optimistic.js";
export { SessionService } from "./gen/pixsim/session/v1/session_pb.js";
