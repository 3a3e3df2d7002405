# syntax=docker/dockerfile:1.7
#
# Streamfleet images: one build, two runtime targets.
#
#   docker build --target edge     -t ghcr.io/streamfleet/streamfleet-edge:0.1.0 .
#   docker build --target operator -t ghcr.io/streamfleet/streamfleet-operator:0.1.0 .
#
# The runtime images are distroless (glibc, libgcc, CA certificates, no shell, no package manager)
# and run as the `nonroot` user (uid/gid 65532), matching the chart's securityContext
# (runAsNonRoot, readOnlyRootFilesystem, all capabilities dropped). Both binaries handle SIGTERM
# themselves, so they run as PID 1 without an init.

ARG RUST_VERSION=1

# ---- build ------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Keep symbols for backtraces, drop the debug info the workspace profile keeps for profiling.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
COPY . .
# Cache mounts keep the crates.io registry and the target dir between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --release -p streamfleet-edge -p streamfleet-operator \
 && mkdir -p /out \
 && cp target/release/streamfleet-edge target/release/streamfleet-operator /out/

# ---- operator ---------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS operator
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="streamfleet-operator" \
      org.opencontainers.image.description="Streamfleet operator: reconciles LiveStream resources into the registry" \
      org.opencontainers.image.source="https://github.com/streamfleet/streamfleet" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/streamfleet-operator /usr/local/bin/streamfleet-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/streamfleet-operator"]
CMD ["run"]

# ---- edge (default target) --------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS edge
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="streamfleet-edge" \
      org.opencontainers.image.description="Streamfleet RTMP edge: lease-guarded publish, play on any pod" \
      org.opencontainers.image.source="https://github.com/streamfleet/streamfleet" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/streamfleet-edge /usr/local/bin/streamfleet-edge
USER 65532:65532
# 1935 public RTMP, 1936 internal relay, 9090 HTTP (/metrics, /healthz, /readyz).
EXPOSE 1935 1936 9090
ENTRYPOINT ["/usr/local/bin/streamfleet-edge"]
