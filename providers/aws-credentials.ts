/** The credential an error message asks the operator to fix, and how. */
export interface AwsCredentialSource {
  /** What it is, e.g. "the web identity role arn:aws:iam::…:role/x (IRSA)". */
  name: string;
  /** What to check or do about it. */
  fix: string;
}

/**
 * The source the SDK's default credential chain takes its credentials from, read from the same
 * environment in the chain's order — static keys, a profile, a web identity token file, the
 * container endpoint, the instance metadata service — so a refusal names the credential to fix.
 * Names variables, files, endpoints and role ARNs only, never a key or token.
 */
export function awsCredentialSource(
  environment: NodeJS.ProcessEnv,
  explicit: boolean,
): AwsCredentialSource {
  const set = (name: string) => (environment[name] ?? "") !== "";
  if (explicit) {
    return {
      name: "the credentials given to the aws provider",
      fix: "give it valid, unexpired ones",
    };
  }
  if (set("AWS_PROFILE")) {
    return {
      name: `the credentials of profile ${environment.AWS_PROFILE} (shared config files)`,
      fix: "renew or correct that profile's credentials (aws configure, aws sso login)",
    };
  }
  if (set("AWS_ACCESS_KEY_ID")) {
    return set("AWS_SESSION_TOKEN")
      ? {
          name: "the temporary access key in AWS_ACCESS_KEY_ID and AWS_SESSION_TOKEN",
          fix: "the daemon cannot renew credentials given in its environment: give it an IAM role (IRSA, EKS Pod Identity, instance profile) or fresh keys and a restart",
        }
      : {
          name: "the access key in AWS_ACCESS_KEY_ID",
          fix: "check that the key is active and AWS_SECRET_ACCESS_KEY is its secret, and that the clock is in sync",
        };
  }
  if (set("AWS_WEB_IDENTITY_TOKEN_FILE") && set("AWS_ROLE_ARN")) {
    return {
      name: `the web identity role ${environment.AWS_ROLE_ARN} (IRSA, token file ${environment.AWS_WEB_IDENTITY_TOKEN_FILE})`,
      fix: "check that the role's trust policy admits this service account and that its projected token is mounted and fresh",
    };
  }
  const relative = environment.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
  const full = environment.AWS_CONTAINER_CREDENTIALS_FULL_URI;
  if ((relative ?? "") !== "" || (full ?? "") !== "") {
    const endpoint = (relative ?? "") !== "" ? `http://169.254.170.2${relative}` : full;
    return {
      name: `the container credentials endpoint ${endpoint} (EKS Pod Identity or ECS task role)`,
      fix: "check the pod identity association (or task role), that its agent runs, and its token file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    };
  }
  return {
    name: "the instance profile (EC2 instance metadata service)",
    fix: "check the instance profile's role, and that IMDS is reachable from the daemon (a pod needs a hop limit of 2)",
  };
}
