# syntax=docker/dockerfile:1
# quay.io/virt-gateway/kube-gateway-web-app: the webAppImage of a GateServer (the Gen B contract,
# kept by crates/operator). The operator runs it as the init container
#   /bin/cp -r /data/web/public /app/web/
# with an emptyDir at /app/web, which the gateway then serves. So the image holds the web app at
# /data/web/public and a static /bin/cp: busybox from Debian's busybox-static package, installed as
# a single file named cp (busybox picks the applet from its name; no other applet is reachable
# through a name, there is no shell). FROM scratch, user 65532.
#
# Two ways to build (images/README.md):
#   * with an engine and registry access, from the repository root (builds from source):
#       docker build -f images/web-app.Dockerfile -t quay.io/virt-gateway/kube-gateway-web-app:0.1.0 .
#   * without an engine (this project's machines): `make images` builds the web app on the host,
#     then buildah runs this file with --build-arg ARTIFACTS=prebuilt and a context holding the
#     finished root filesystem (rootfs/).
# Both lay the root filesystem out with images/rootfs.sh.
ARG ARTIFACTS=source
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${NODE_IMAGE} AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN WEB_DIST=/out/web/public npm run build

FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends busybox-static binutils \
    && rm -rf /var/lib/apt/lists/*
COPY images/rootfs.sh /rootfs.sh
COPY --from=web /out/web/public /out/web/public
RUN bash /rootfs.sh web-app /rootfs --cp /bin/busybox --web /out/web/public \
    --cp-copyright /usr/share/doc/busybox-static/copyright

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
WORKDIR /data
# The command the operator (and Gen B) gives the init container; the image does nothing else.
CMD ["/bin/cp", "-r", "/data/web/public", "/app/web/"]
LABEL org.opencontainers.image.title="kube-gateway-web-app" \
      org.opencontainers.image.description="virt-gateway web app (login page, noVNC console) for GateServer.spec.webAppImage" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/yaacov/virt-gateway-operator" \
      org.opencontainers.image.licenses="Apache-2.0 AND MPL-2.0 AND MIT AND GPL-2.0-only"
