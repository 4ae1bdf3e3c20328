# A Mosquitto broker for docker/compose.yaml, from Debian's package (the
# version the project tests against), so the stack builds from the Debian
# mirror alone.  With a registry at hand, docker.io/eclipse-mosquitto:2
# with docker/compose/mosquitto.conf does the same.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends mosquitto mosquitto-clients \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o mosquitto -g mosquitto -m 0750 /var/lib/mosquitto
USER mosquitto
# Retained messages and queued QoS 1 messages: must outlive the container.
VOLUME /var/lib/mosquitto
EXPOSE 1883
ENTRYPOINT ["/usr/sbin/mosquitto"]
CMD ["-c", "/etc/mosquitto/compose.conf"]
