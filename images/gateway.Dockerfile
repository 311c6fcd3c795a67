# syntax=docker/dockerfile:1
# quay.io/virt-gateway/kube-gateway: the gateway, a static binary at /app/kube-gateway, with the web
# app baked in at /app/web/public (its default web root ./web/public from WORKDIR /app, as Gen B's
# image). A GateServer with a webAppImage mounts an emptyDir over /app/web and fills it from that
# image instead. FROM scratch, user 65532, nothing else: no shell, no package manager.
#
# Two ways to build (images/README.md):
#   * with an engine and registry access, from the repository root (builds from source):
#       docker build -f images/gateway.Dockerfile -t quay.io/virt-gateway/kube-gateway:0.1.0 .
#   * without an engine (this project's machines): `make images` builds the static binary and the
#     web app on the host, then buildah runs this file with --build-arg ARTIFACTS=prebuilt and a
#     context holding the finished root filesystem (rootfs/).
# Both lay the root filesystem out with images/rootfs.sh.
ARG ARTIFACTS=source
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim

FROM ${NODE_IMAGE} AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN WEB_DIST=/out/web/public npm run build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS='-C target-feature=+crt-static -C strip=symbols --remap-path-prefix=/usr/local/cargo=/cargo' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu -p kube-gateway
COPY --from=web /out/web/public /out/web/public
RUN bash images/rootfs.sh gateway /rootfs \
    --binary target/x86_64-unknown-linux-gnu/release/kube-gateway --web /out/web/public

FROM scratch AS source
COPY --from=build /rootfs/ /rootfs/

FROM scratch AS prebuilt
COPY rootfs/ /rootfs/

FROM ${ARTIFACTS} AS artifacts

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
COPY --from=artifacts /rootfs/ /
USER 65532:65532
WORKDIR /app
ENTRYPOINT ["/app/kube-gateway"]
EXPOSE 8080 9090
LABEL org.opencontainers.image.title="kube-gateway" \
      org.opencontainers.image.description="virt-gateway authenticating proxy with the web app (login page, noVNC console)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/yaacov/virt-gateway-operator" \
      org.opencontainers.image.licenses="Apache-2.0 AND MPL-2.0 AND MIT"
