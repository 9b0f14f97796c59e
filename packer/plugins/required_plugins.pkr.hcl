# Plugin requirements for Packer >= 1.7, kept apart from the templates so Packer 1.6.6
# (Debian's package, built-in builders) still validates packer/*.pkr.hcl. Pinned to a
# major version (~> 1.3 is >= 1.3, < 2): a new major release can change the builders'
# settings, so it is taken on purpose, not by the next `packer init`.
#
#   packer init packer/plugins
#   packer build packer/
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      version = "~> 1.3"
      source  = "github.com/hashicorp/amazon"
    }
    googlecompute = {
      version = "~> 1.1"
      source  = "github.com/hashicorp/googlecompute"
    }
  }
}
