# escape=`
FROM demo AS a
ENV X=1 \`
  Y=2
ARG Z
FROM a
ONBUILD RUN echo
HEALTHCHECK --interval=1s CMD true
