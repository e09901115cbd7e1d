// Who the console is talking as: auth on or off, the token's roles, and the sign-in prompt.
//
// The API has no "who am I" call, so the console asks the server what the token may do with calls
// that change nothing: the auth interceptor checks the role before the request is read, so an
// empty CancelTrainJob answers PERMISSION_DENIED without the trainer role and INVALID_ARGUMENT
// with it (likewise RecordFeedback for the writer role). The UI only hides what the role may not
// do; the server still decides every call.
import { Code } from "@connectrpc/connect";
import { code, fleet, setToken, telemetry, token, training } from "./api.js";
import { h } from "./dom.js";

export interface Session {
  authOn: boolean;
  canWrite: boolean;
  canTrain: boolean;
}

export let session: Session = { authOn: false, canWrite: false, canTrain: false };

async function allowed(call: () => Promise<unknown>): Promise<boolean> {
  try {
    await call();
    return true;
  } catch (error) {
    return code(error) !== Code.PermissionDenied && code(error) !== Code.Unauthenticated;
  }
}

/** Resolves once the server accepts the caller; shows the token prompt until it does. */
export async function signIn(main: HTMLElement): Promise<Session> {
  let problem = "";
  for (;;) {
    try {
      await fleet.status({});
      break;
    } catch (error) {
      if (code(error) !== Code.Unauthenticated) throw error;
      problem = token()
        ? "That token was not accepted: it is not in the server's tokens file. Enter another token."
        : "This server requires a token. Enter the bearer token you were given.";
      setToken(null);
      const entered = await prompt(main, problem);
      setToken(entered);
    }
  }
  const authOn = token() !== null;
  const [canWrite, canTrain] = authOn
    ? await Promise.all([
        allowed(() => telemetry.recordFeedback({})),
        allowed(() => training.cancelTrainJob({ jobId: "" })),
      ])
    : [true, true];
  session = { authOn, canWrite, canTrain };
  return session;
}

function prompt(main: HTMLElement, problem: string): Promise<string> {
  return new Promise((resolve) => {
    const input = h("input", {
      id: "token",
      type: "password",
      autocomplete: "off",
      required: true,
      "aria-describedby": "token-problem",
    });
    const form = h(
      "form",
      { class: "card signin", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, "Sign in"),
      h("p", { id: "token-problem", class: "problem" }, problem),
      h("label", { for: "token" }, "Token"),
      input,
      h("button", { type: "submit" }, "Sign in"),
      h("p", { class: "hint" }, "The token is kept in this tab's session storage only, and sent as an authorization header."),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (value) resolve(value);
    });
    main.replaceChildren(form);
    input.focus();
  });
}

export function signOut(): void {
  setToken(null);
  location.hash = "#/fleet";
  location.reload();
}

export function describe(s: Session): string {
  if (!s.authOn) return "Authentication is off";
  const roles = ["reader", s.canWrite ? "writer" : "", s.canTrain ? "trainer" : ""].filter(Boolean);
  return `Signed in: ${roles.join(", ")}`;
}

