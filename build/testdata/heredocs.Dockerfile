FROM scratch
COPY <<EOF /a
x
EOF
RUN <<A bash
echo
A
