# The serving container: serves a registered model version over HTTP with `mlflow models serve`
# in the image's own environment (no conda or virtualenv at start-up).
#   docker build -t model-gates-serving .
#   docker run -e MLFLOW_TRACKING_URI=http://mlflow:5000 -p 5001:5001 model-gates-serving
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_TRACKING_URI=http://mlflow:5000 \
    MODEL_URI=models:/ames-price@production \
    SERVE_PORT=5001

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline ./pipeline
# psycopg2 and boto3 reach the PostgreSQL registry and the S3-compatible artifact store;
# Flask-WTF is MLflow's auth extra, for the compose file's `mlflow server --app-name basic-auth`.
RUN pip install --no-cache-dir -c constraints.txt . "psycopg2-binary>=2.9" "boto3>=1.34" "Flask-WTF>=1.2,<2" \
    && useradd --create-home --uid 10001 serve
USER serve

EXPOSE 5001
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"SERVE_PORT\"]}/ping', timeout=2)"
CMD ["sh", "-c", "exec mlflow models serve -m \"$MODEL_URI\" --env-manager local --host 0.0.0.0 --port \"$SERVE_PORT\""]
