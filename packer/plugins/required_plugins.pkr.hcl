# Plugin requirements for Packer >= 1.7, kept apart from the templates so Packer 1.6.6
# (Debian's package, built-in builders) still validates packer/*.pkr.hcl:
#
#   packer init packer/plugins
#   packer build packer/
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
    googlecompute = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/googlecompute"
    }
  }
}
