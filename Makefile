.PHONY: up test
up:
	bash scripts/up.sh $(ARGS)
test:
	bash scripts/test.sh $(ARGS)
