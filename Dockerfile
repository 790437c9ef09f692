# The callcontrol engine (not Asterisk): `callcontrol serve` against an
# Asterisk reachable over ARI. Build: docker build -t callcontrol .
# Run:   docker run --network host -e CALLCONTROL_ARI__URL=http://127.0.0.1:8088 \
#          -e CALLCONTROL_DATABASE__URL=postgresql+asyncpg://... callcontrol
# Not built in this project's CI (no Docker engine there); kept deliberately plain.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CALLCONTROL_LOG_FORMAT=json CALLCONTROL_HTTP__HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY callcontrol ./callcontrol
COPY provisioning ./provisioning
RUN pip install --no-cache-dir . \
    && useradd --system --create-home --home-dir /var/lib/callcontrol callcontrol
USER callcontrol
WORKDIR /var/lib/callcontrol
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3)" || exit 1
ENTRYPOINT ["callcontrol"]
CMD ["serve"]
