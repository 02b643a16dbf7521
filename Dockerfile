# The ecomstream CLI and workers, for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md topics.yaml ./
COPY ecom ./ecom
COPY schemas ./schemas
COPY producers ./producers
COPY consumers ./consumers
COPY streams ./streams
COPY chain ./chain
COPY bench ./bench
RUN pip install --no-cache-dir . && mkdir /secrets /ca && chown 1000:1000 /secrets /ca
ENV ECOM_HOME=/app
ENTRYPOINT ["ecom"]
