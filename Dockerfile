# One image for every process of the mailer: the web app, the workers, the scheduler and the
# capture SMTP server differ only in their command (see docker-compose.yml).

# Front-end assets come from npm at build time, as scripts/lib.sh ensure_assets does.
FROM node:20-slim AS assets
WORKDIR /assets
RUN npm install --silent --no-audit --no-fund @picocss/pico@2

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/mailer
# Editable install: the code finds sql/ and broker/ next to app/, as in a checkout.
COPY pyproject.toml README.md ./
COPY app ./app
COPY consumers ./consumers
RUN pip install -e .
COPY sql ./sql
COPY broker ./broker
COPY --from=assets /assets/node_modules/@picocss/pico/css/pico.min.css ./app/static/vendor/pico.min.css
RUN useradd --system --no-create-home --home-dir /srv/mailer mailer
USER mailer
EXPOSE 5000 2525
CMD ["gunicorn", "--bind", "0.0.0.0:5000", "--workers", "2", "--threads", "8", "--access-logfile", "-", "app:create_app()"]
