# syntax=docker/dockerfile:1
# quay.io/virt-gateway/virt-gateway-operator: the operator, a static binary at
# /usr/local/bin/virt-gateway-operator (the ENTRYPOINT; deploy/virt-gateway-operator.yaml passes
# only args). FROM scratch, user 65532, nothing else: no shell, no package manager.
#
# Two ways to build (images/README.md):
#   * with an engine and registry access, from the repository root (builds from source):
#       docker build -f images/operator.Dockerfile -t quay.io/virt-gateway/virt-gateway-operator:0.1.0 .
#   * without an engine (this project's machines): `make images` builds the static binary on the
#     host, then buildah runs this file with --build-arg ARTIFACTS=prebuilt and a context holding
#     the finished root filesystem (rootfs/).
# Both lay the root filesystem out with images/rootfs.sh.
ARG ARTIFACTS=source
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS='-C target-feature=+crt-static -C strip=symbols --remap-path-prefix=/usr/local/cargo=/cargo' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu -p virt-gateway-operator
RUN bash images/rootfs.sh operator /rootfs \
    --binary target/x86_64-unknown-linux-gnu/release/virt-gateway-operator

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
ENTRYPOINT ["/usr/local/bin/virt-gateway-operator"]
EXPOSE 8080 8081
LABEL org.opencontainers.image.title="virt-gateway-operator" \
      org.opencontainers.image.description="Kubernetes operator for GateServer and GateToken (ocgate.yaacov.com/v1beta1)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/yaacov/virt-gateway-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
