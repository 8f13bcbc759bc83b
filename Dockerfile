# syntax=docker/dockerfile:1
#
# kms-envelope image: the KMS plugin daemon and the CLI, run as a non-root user.
#
#   docker build -t kms-envelope:latest .
#   docker run --rm kms-envelope:latest keygen
#   docker run --rm kms-envelope:latest serve --help
#
# The package declares engines node >=20.11; the image uses the current LTS line. For
# production builds pin NODE_IMAGE by digest (node:22-bookworm-slim@sha256:...).
ARG NODE_IMAGE=node:22-bookworm-slim

# ---------------------------------------------------------------------------- build
FROM ${NODE_IMAGE} AS build
WORKDIR /src

# better-sqlite3 (the store's embedded backend) and pkcs11js (the pkcs11 provider's binding) are
# native add-ons: node-gyp compiles them when no prebuilt binary matches, which needs these.
# They stay in this stage only. A PKCS#11 module (an HSM vendor's library) is mounted at run
# time, not built in.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, so this layer is reused while only the sources change.
# --ignore-scripts: `npm ci` would otherwise run this package's `prepare` script (the
# TypeScript build) before any source is copied. The dependencies' own install scripts
# are run afterwards by `npm rebuild`, which does not run the root `prepare`.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY config ./config
COPY providers ./providers
COPY src ./src

# Run the dependencies' install scripts (needed by any native addon), compile to dist/
# with the dev dependencies present, then drop those (typescript, tsx, biome, @types)
# so only the runtime dependencies reach the final image.
RUN npm rebuild \
 && npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# -------------------------------------------------------------------------- runtime
FROM ${NODE_IMAGE}

# The daemon needs only `node`: remove the package managers shipped in the base image
# (less to patch, nothing to run `npm install` with). The socket directory is created
# for the unprivileged user so a plain `docker run` with a volume there works; the
# Kubernetes static pod mounts a hostPath over it instead.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && mkdir -p /var/run/kmsplugin \
 && chown 65532:65532 /var/run/kmsplugin \
 && chmod 0750 /var/run/kmsplugin

WORKDIR /app
# Defaults for `serve` and for the client commands (`status`) run inside the container;
# command-line flags still take precedence.
ENV NODE_ENV=production \
    KMS_ENVELOPE_SOCKET=unix:///var/run/kmsplugin/kms-envelope.sock \
    KMS_ENVELOPE_RUN_DIR=/var/run/kmsplugin

# Application files stay owned by root and read-only for the runtime user.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
COPY --from=build /src/config ./config

# Numeric user (no passwd entry needed), so runAsNonRoot can verify it. The HTTP
# endpoints (/healthz, /livez, /readyz, /metrics) listen on 127.0.0.1:8089 by default,
# i.e. loopback only; nothing is EXPOSEd on purpose.
USER 65532:65532

ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["serve"]
