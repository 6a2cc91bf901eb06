# probe in a container: `probe schedule` as an unprivileged user, results in a volume.
# Builds on amd64 and arm64 (Raspberry Pi 3/4/5 on 64-bit OS): every dependency is a wheel or
# pure Python there (docs/volunteers.md says how that was checked). No extra capability is needed;
# only scapy-based lab features would want NET_RAW, and the probe does not use them.
#
# Every step, arm64 (docker buildx build --platform linux/arm64) and the volumes: docs/volunteers.md.
# The base is pinned to a Python release and a Debian release (append @sha256:... for the bytes);
# tests/test_packaging.py checks this file statically.
#
#   docker build -t probe .
#   docker run --rm -it -v probe-state:/var/lib/probe probe probe consent     # once: read, agree
#   docker run -d --name probe --restart unless-stopped \
#       -v probe-state:/var/lib/probe -v probe-results:/results probe
#
# The same image runs a collector (docs/collector.md) when built with the collector extra:
#   docker build --build-arg EXTRAS=collector -t probe-collector .
#   docker run -d --name collector --restart unless-stopped -p 8443:8443 \
#       -v collector-data:/var/lib/probe -v /etc/probe-collector:/tls:ro probe-collector \
#       probe collector serve --data /var/lib/probe/collector --host 0.0.0.0 --port 8443 \
#       --tls-cert /tls/cert.pem --tls-key /tls/key.pem
#
# `docker stop` sends SIGTERM: the current campaign gets [schedule] stop_grace seconds (5,
# under docker's 10) to finish, else it is abandoned; everything already written stays intact.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/probe
COPY pyproject.toml README.md ./
COPY probe ./probe
COPY configs ./configs
ARG EXTRAS=""
RUN pip install ".${EXTRAS:+[$EXTRAS]}" \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/probe --create-home probe \
    && mkdir -p /results \
    && chown probe:probe /results /var/lib/probe

USER probe
ENV PROBE_STATE_DIR=/var/lib/probe \
    PROBE_CONFIG=/opt/probe/configs/x.toml
VOLUME ["/results", "/var/lib/probe"]
CMD ["probe", "schedule", "--output", "/results"]
