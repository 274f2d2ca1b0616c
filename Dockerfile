# feedgen: ingest + scheduled jobs + server (`feedgen run`). Configure with FEEDGEN_* variables.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY feedgen ./feedgen
COPY algorithms ./algorithms
RUN pip install --no-cache-dir . && useradd --create-home feedgen && mkdir /data && chown feedgen /data

USER feedgen
ENV FEEDGEN_DATABASE=/data/feedgen.db
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/xrpc/_health', timeout=4)"
CMD ["feedgen", "run", "--host", "0.0.0.0", "--port", "8000"]
