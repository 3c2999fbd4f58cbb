# The Paddock image: the static `paddock` binary (server, CLI and the agent
# that sandboxes run) on an empty base, with CA certificates, a non-root user
# and a writable data directory. It needs no registry to build:
#
#   scripts/build-image            # builds the static binary, then this image
#
# which stages the build context in target/image/ (the stripped binary, the
# host's CA bundle, /etc/passwd and /etc/group naming the user) and runs
# `docker build -f Dockerfile target/image`.
FROM scratch

COPY etc/passwd etc/group /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=10001:10001 data/ /var/lib/paddock/
COPY paddock /usr/local/bin/paddock

# The server's defaults for a container: every interface (so API keys are
# required: `paddock keys create` makes them in the same data directory) and
# state under the data directory. Metrics stay off unless asked for
# (PADDOCK_METRICS_LISTEN=0.0.0.0:9090, as the Helm chart sets).
ENV PADDOCK_LISTEN=0.0.0.0:50051 \
    PADDOCK_DATA_DIR=/var/lib/paddock \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 10001:10001
WORKDIR /var/lib/paddock
EXPOSE 50051 9090
VOLUME ["/var/lib/paddock"]
ENTRYPOINT ["/usr/local/bin/paddock"]
CMD ["serve"]
