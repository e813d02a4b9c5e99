# A FROM-scratch image holding one static binary. No registry is reachable
# from our machines, so nothing is pulled: build the binary first, then the
# image (`make image` does both):
#
#   CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/node ./cmd/node
#   docker build -t tierlimit:dev .
FROM scratch
COPY bin/node /node
COPY config/tiers.json /config/tiers.json
# /state belongs to the node's uid, so a volume mounted there (the compose
# file's) can hold -state-file.
COPY --chown=65532:65532 docker/state /state
ENV CONFIG=/config/tiers.json \
    HTTP_ADDR=:8080 \
    GRPC_ADDR=:9090 \
    GOSSIP_ADDR=:7946
# HTTP, gRPC (peers), gossip (memberlist uses UDP and TCP).
EXPOSE 8080/tcp 9090/tcp 7946/tcp 7946/udp
# Any non-root uid; scratch has no /etc/passwd, so it is numeric.
USER 65532:65532
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["/node", "healthcheck"]
ENTRYPOINT ["/node"]
